"""Study tests. TINY_RECIPE: the two-epoch CPU recipe of the tiny studies that really train."""

TINY_RECIPE = {
    "preset": "demo",
    "epochs": 2,
    "img_size": 64,
    "batch_size": 4,
    "export": False,
    "device": "cpu",
    "workers": 0,
}
