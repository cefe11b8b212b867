"""The official files `hyperstyle download` knows by name: where they live, what they are, and the named groups."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Checkpoint", "REGISTRY", "GROUPS", "describe_registry", "expand_names"]

_GITHUB_RAW = ("https://raw.githubusercontent.com/yuval-alaluf/hyperstyle/"
               "a723c7310312ca5b7f859340027f78e18965acbc/editing/interfacegan_directions/")


@dataclass(frozen=True)
class Checkpoint:
    """A downloadable file: official name, where to get it, and what it must look like (when known)."""
    name: str
    filename: str
    urls: tuple[str, ...]
    page: str                 # where a person can get it by hand
    description: str
    size: int | None = None   # bytes
    sha256: str | None = None


def _drive(name: str, file_id: str, description: str, filename: str | None = None) -> Checkpoint:
    return Checkpoint(name, filename or f"{name}.pt",
                      (f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t",),
                      f"https://drive.google.com/file/d/{file_id}/view", description)


def _github(name: str, size: int, sha256: str, description: str) -> Checkpoint:
    url = f"{_GITHUB_RAW}{name}.pt"
    return Checkpoint(name, f"{name}.pt", (url,), url, description, size, sha256)


# Google Drive ids from the official HyperStyle README / notebooks/notebook_utils.py. Their sizes and hashes are
# not published, so only the files that live in the official repository itself carry size and sha256.
REGISTRY: dict[str, Checkpoint] = {c.name: c for c in [
    _drive("hyperstyle_ffhq", "1C3dEIIH1y8w1-zQMCyx7rDF0ndswSXh4", "HyperStyle, human faces (FFHQ 1024)"),
    _drive("hyperstyle_cars", "1WZ7iNv5ENmxXFn6dzPeue1jQGNp6Nr9d", "HyperStyle, cars (Stanford Cars 512)"),
    _drive("hyperstyle_afhq_wild", "1OMAKYRp3T6wzGr0s3887rQK-5XHlJ2gp", "HyperStyle, wild animals (AFHQ Wild 512)"),
    _drive("faces_w_encoder", "1M-hsL3W_cJKs77xM1mwq2e9-J0_m7rHP", "W-encoder for faces (needed by hyperstyle_ffhq)"),
    _drive("cars_w_encoder", "1GZke8pfXMSZM9mfT-AbP1Csyddf5fas7", "W-encoder for cars"),
    _drive("afhq_wild_w_encoder", "1MhEHGgkTpnTanIwuHYv46i6MJeet2Nlr", "W-encoder for AFHQ Wild"),
    _drive("stylegan2-ffhq-config-f", "1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT", "StyleGAN2 FFHQ 1024 generator"),
    _drive("stylegan2-car-config-f", "1UmMHHB3DU1trTB8_9Fjkck5ZwArnD81B", "StyleGAN2 LSUN Car 512 generator"),
    _drive("afhqwild", "1z6IVVaCJuFTksKwp1CM3emWOVHbrBip-", "StyleGAN-ADA AFHQ Wild 512 generator"),
    _drive("restyle_e4e_ffhq_encode", "1e2oXVeBPXMQoUoC_4TNwAWpOPpSEhE_e",
           "ReStyle-e4e FFHQ encoder (domain adaptation latents)"),
    _drive("toonify", "1r3XVCt_WYUKFZFxhNH-xO2dTtF6B5szu", "Toonify generator (domain adaptation)"),
    _drive("pixar", "1trPW-To9L63x5gaXrbAIPkOU0q9f_h05", "StyleGAN-NADA Pixar generator (domain adaptation)"),
    _drive("sketch", "1aHhzmxT7eD90txAN93zCl8o9CUVbMFnD", "StyleGAN-NADA sketch generator (domain adaptation)"),
    _drive("disney_princess", "1rXHZu4Vd0l_KCiCxGbwL9Xtka7n3S2NB",
           "StyleGAN-NADA Disney princess generator (domain adaptation)"),
    _github("age", 2808, "50074516b1629707d89b5e43d6b8abd1792212fa3b961a87a11323d6a5222ae0",
            "InterFaceGAN age direction"),
    _github("smile", 2808, "817a7e732b59dee9eba862bec8bd7e8373568443bc9f9731a21cf9b0356f0653",
            "InterFaceGAN smile direction"),
    _github("pose", 37624, "736e0eacc8488fa0b020a2e7bd256b957284c364191dfea693705e5d06d43e7d",
            "InterFaceGAN pose direction (W+, 1024 models)"),
    # Loss networks for `hyperstyle train` (the links the official HyperStyle / LPIPS / torchvision code uses).
    _drive("model_ir_se50", "1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn", "IR-SE50 ArcFace (identity loss, faces)",
           "model_ir_se50.pth"),
    Checkpoint("alexnet", "alexnet.pth", ("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",),
               "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", "AlexNet features (LPIPS loss)"),
    Checkpoint("lpips_alex", "lpips_alex.pth",
               ("https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/weights/v0.1/alex.pth",),
               "https://github.com/richzhang/PerceptualSimilarity/tree/master/lpips/weights/v0.1",
               "LPIPS v0.1 linear layers for AlexNet (LPIPS loss)"),
    _drive("moco_v2_800ep_pretrain", "18rLcNGdteX5LwT7sv_F7HWr12HpVEzVe", "MoCo-v2 ResNet-50 (similarity loss, "
           "cars and wild animals)"),
]}

GROUPS: dict[str, tuple[str, ...]] = {
    "faces": ("hyperstyle_ffhq", "faces_w_encoder", "age", "smile", "pose"),
    "domain": ("restyle_e4e_ffhq_encode", "toonify", "pixar", "sketch", "disney_princess"),
    "cars": ("hyperstyle_cars", "cars_w_encoder"),
    "wild": ("hyperstyle_afhq_wild", "afhq_wild_w_encoder"),
    "train_faces": ("alexnet", "lpips_alex", "model_ir_se50"),
    "train_other": ("alexnet", "lpips_alex", "moco_v2_800ep_pretrain"),
}


def describe_registry() -> str:
    """Human-readable list of the checkpoints and groups, and the web page of each file (the manual route)."""
    width = max(map(len, REGISTRY))
    lines = [f"{c.name:<{width}}  {c.description}" + (f" ({c.size} bytes, sha256 known)" if c.sha256 else "")
             for c in REGISTRY.values()]
    lines += ["", "groups:"] + [f"{g:<{width}}  {' '.join(names)}" for g, names in GROUPS.items()]
    lines += ["", "by hand: save FILE.pt from its page, then run `hyperstyle convert FILE.pt --out models/`",
              "(or serve the files under these names and pass --mirror URL, or set $HYPERSTYLE_DOWNLOAD_BASE):"]
    lines += [f"{c.filename:<{width + 3}}  {c.page}" for c in REGISTRY.values()]
    return "\n".join(lines)


def expand_names(names: list[str]) -> list[str]:
    """Group names -> their members; order kept, duplicates dropped."""
    out: list[str] = []
    for name in names:
        for n in GROUPS.get(name, (name,)):
            if n not in out:
                out.append(n)
    return out
