// Exercises (vnotes.exercises.show_solution): in a notebook a reference solution is folded in its own
// <details>; in the book it already sits in a sphinx-exercise solution behind a toggle, so open the inner fold.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".solution details.vnotes-solution").forEach((d) => {
    d.open = true;
  });
});
