# %% [markdown]
# # N. Chapter title
#
# What the chapter is about, in two or three sentences, and what the reader will see.
# Cite papers with {cite:p}`key` (entries in bib/<chapter>.bib).

# %% tags=["hide-input"]
# In Colab: install vnotes from the repository (does nothing anywhere else).
import os
import sys

if "google.colab" in sys.modules or os.environ.get("VNOTES_PIP_SOURCE"):
    import subprocess

    source = os.environ.get(
        "VNOTES_PIP_SOURCE",
        "vnotes @ git+https://github.com/vnotes-book/vnotes@main",
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", source], check=True
    )

# %% tags=["parameters"]
import os

# "smoke" (seconds), "default" (2-core CPU, up to 150 s), "full" (GPU)
scale = os.environ.get("VNOTES_SCALE", "default")

# %%
from vnotes import Recorder, describe, pick_device, resolve_scale

scale = resolve_scale(scale)
device = pick_device()
rec = Recorder("NN_name", scale)  # must equal the notebook's file name
print(f"scale={scale}; running on {describe(device)}")

# %% [markdown]
# ## A section: explain first, then compute.
