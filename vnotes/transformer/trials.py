"""Development runs behind page 4d's equal-budget comparison of ViT, Swin and MLP-Mixer (``04d_swin_mixer``).

These are not test results and the page does not repeat them: they are the validation numbers its choices
were made from. Every run: the page's models (the ViT, Swin and Mixer toys, all with 4 x 4-pixel patches on
32 x 32 scenes), its 6,000 training images in batches of 32, standardised with the training images' channel
means and standard deviations, AdamW (weight decay 0.05) with a one-cycle schedule (10 % warm-up), seed 0,
fp32 on one CPU thread, scored on the page's 1,000 validation images after every epoch. Measured 2026-12-06 on
the AMD EPYC with AVX-512 (probe: fp32 81-95 GFLOP/s, bf16 208-213 GFLOP/s).

* ``"learning_rate"``: the best validation accuracy over 6 epochs (the page's budget) at each learning rate;
  the page takes each model's best. All three peak at 2e-3, inside the grid.
* ``"twelve_epochs"``: validation accuracy after each of 12 epochs (twice the page's budget, one-cycle over
  the 12) at the chosen learning rate.

History: until 2026-12-06 the inputs were raw [0, 1] pixels. Then the best rates were ViT 1e-3 (0.776), Swin
5e-4 (0.660, and 0.15 -- the class prior -- for its whole first epoch at every rate) and Mixer 2e-3 (0.816);
at 12 epochs 0.911 / 0.925 / 0.980. Batches of 64 instead of 32 at 1e-3 (6 epochs, raw pixels): ViT 0.509,
Swin 0.504, Mixer 0.690; all three did better with 32.
"""

EQUAL_BUDGET_TRIALS: dict[str, dict] = {
    "learning_rate": {
        "ViT": {5e-4: 0.869, 1e-3: 0.882, 2e-3: 0.926, 4e-3: 0.881},
        "Swin": {5e-4: 0.802, 1e-3: 0.855, 2e-3: 0.930, 4e-3: 0.825},
        "MLP-Mixer": {5e-4: 0.751, 1e-3: 0.799, 2e-3: 0.906, 4e-3: 0.899},
    },
    "twelve_epochs": {
        # lr 2e-3
        "ViT": (
            0.422,
            0.577,
            0.753,
            0.873,
            0.862,
            0.912,
            0.956,
            0.969,
            0.979,
            0.985,
            0.985,
            0.985,
        ),
        # lr 2e-3
        "Swin": (
            0.311,
            0.513,
            0.736,
            0.795,
            0.893,
            0.93,
            0.936,
            0.964,
            0.977,
            0.975,
            0.975,
            0.975,
        ),
        # lr 2e-3
        "MLP-Mixer": (
            0.405,
            0.521,
            0.654,
            0.818,
            0.897,
            0.954,
            0.962,
            0.973,
            0.981,
            0.985,
            0.984,
            0.984,
        ),
    },
}
