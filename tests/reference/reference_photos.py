"""The photos the preprocessing models' reference checks run on: the two landscape sample photos
and crops of chelsea.png at portrait, landscape and square sizes, written as PNGs beside the
fixtures. The sizes are those at which a pass-order slip in Pillow's resize shows (a portrait
photo whose height is not a multiple of the processor's size: issue 22) and their controls."""
import os

from PIL import Image

# (width, height): portrait, then landscape, then square; tiny ones included.
SIZES = [(72, 100), (64, 100), (90, 120), (72, 96), (13, 21), (11, 16), (100, 72), (120, 90), (96, 96), (100, 100),
         (97, 97), (48, 48)]


def reference_photos(samples, out_dir, sizes=SIZES):
    """The two samples' paths, then one PNG per size cut from the middle of chelsea.png."""
    photos = [os.path.join(samples, n) for n in ("chelsea.png", "coffee.png")]
    source = Image.open(photos[0]).convert("RGB")
    os.makedirs(out_dir, exist_ok=True)
    for w, h in sizes:
        left, top = (source.width - w) // 2, (source.height - h) // 2
        path = os.path.join(out_dir, f"photo-{w}x{h}.png")
        source.crop((left, top, left + w, top + h)).save(path)
        photos.append(path)
    return photos
