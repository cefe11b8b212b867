"""The official files, in one table: what each is (its kind), where `hyperstyle download` gets it, the names it is
released under, and the file each kind starts on. Loaders, pickers, the command line and the folder runner all
read it here.

A kind is what a converted model file holds ("hyperstyle", "w_encoder", ..., "direction", the loss networks); each
official `.pt` converts to one kind. `hyperstyle download NAME` saves it converted as `models/NAME.safetensors`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

__all__ = ["Checkpoint", "ModelKind", "MODEL_KINDS", "KINDS", "KIND_TITLES", "DEFAULT_FILES", "REGISTRY", "GROUPS",
           "official_names", "original_file_kind", "default_files", "describe_registry", "expand_names"]

_GITHUB_RAW = ("https://raw.githubusercontent.com/yuval-alaluf/hyperstyle/"
               "a723c7310312ca5b7f859340027f78e18965acbc/editing/interfacegan_directions/")


@dataclass(frozen=True)
class ModelKind:
    """A kind of converted model file: how messages name it, what its official `.pt` holds, its default file."""
    title: str                # "HyperStyle model": how messages name it
    holds: str                # what the official .pt holds (listed when a file converts to no kind)
    default: str              # the registry name loaders, the runner and messages start on


MODEL_KINDS: dict[str, ModelKind] = {
    "hyperstyle": ModelKind("HyperStyle model", "HyperStyle model (hyperstyle_ffhq.pt, hyperstyle_cars.pt, "
                            "hyperstyle_afhq_wild.pt): 'state_dict' with hypernet.* + decoder.*, and latent_avg",
                            "hyperstyle_ffhq"),
    "w_encoder": ModelKind("W-encoder", "pSp W-encoder (faces_w_encoder.pt, cars_w_encoder.pt, "
                           "afhq_wild_w_encoder.pt): 'state_dict' with encoder.* (IR-SE50 + linear) + decoder.*",
                           "faces_w_encoder"),
    "restyle_e4e": ModelKind("ReStyle-e4e encoder", "ReStyle e4e encoder (restyle_e4e_ffhq_encode.pt): 'state_dict' "
                             "with encoder.styles.* + decoder.*", "restyle_e4e_ffhq_encode"),
    "stylegan2": ModelKind("StyleGAN2 generator", "rosinality StyleGAN2 generator (stylegan2-ffhq-config-f.pt, "
                           "toonify, StyleGAN-NADA, ...): 'g_ema'", "stylegan2-ffhq-config-f"),
    "direction": ModelKind("latent direction", "InterFaceGAN latent direction (age.pt, smile.pt [1, 512]; pose.pt "
                           "[1, 18, 512]): a bare tensor", "age"),
    # The loss networks of training (criteria/), in their original layouts.
    "ir_se50": ModelKind("face-identity network (IR-SE50, ID loss)", "ArcFace IR-SE50 for the ID loss "
                         "(model_ir_se50.pth): a plain state dict with input_layer.*, body.*, output_layer.*",
                         "model_ir_se50"),
    "alexnet": ModelKind("perceptual-loss network (LPIPS AlexNet)", "torchvision AlexNet for LPIPS "
                         "(alexnet-owt-7be5be79.pth): a plain state dict with features.* (classifier.* is dropped)",
                         "alexnet"),
    "lpips_alex_lin": ModelKind("perceptual-loss calibration (LPIPS linear layers)", "LPIPS v0.1 linear layers "
                                "(lpips alex.pth): lin0..lin4.model.1.weight", "lpips_alex"),
    "moco_v2": ModelKind("similarity-loss network (MoCo-v2 ResNet-50)", "MoCo-v2 ResNet-50 for the MoCo loss "
                         "(moco_v2_800ep_pretrain.pt): 'state_dict' with module.encoder_q.* (fc, encoder_k and queue "
                         "are dropped)", "moco_v2_800ep_pretrain"),
}
# The same table by field, as the converter, loaders and messages read it.
KINDS: dict[str, str] = {kind: k.holds for kind, k in MODEL_KINDS.items()}
KIND_TITLES: dict[str, str] = {kind: k.title for kind, k in MODEL_KINDS.items()}
DEFAULT_FILES: dict[str, str] = {kind: f"{k.default}.safetensors" for kind, k in MODEL_KINDS.items()}

# Pickers of files that load without conversion, and the official files they start on: OpenAI's CLIP (as released,
# or converted with `hyperstyle clip-convert`) and GANSpace statistics (the official cars_pca.pt).
_LOADED_AS_RELEASED_DEFAULTS: dict[str, tuple[str, ...]] = {"clip": ("ViT-B-32.safetensors", "ViT-B-32.pt"),
                                                             "ganspace": ("cars_pca.pt",)}


@dataclass(frozen=True)
class Checkpoint:
    """A downloadable file: official name, where to get it, and what it must look like (when known)."""
    name: str                 # the `hyperstyle download` name; it converts to <name>.safetensors
    filename: str             # the name it is downloaded under
    urls: tuple[str, ...]
    page: str                 # where a person can get it by hand
    description: str
    size: int | None = None   # bytes
    sha256: str | None = None
    kind: str | None = None   # what it converts to (a MODEL_KINDS key); None for a custom download
    aliases: tuple[str, ...] = ()   # the stems of the names it is released under, where these differ from `name`
    released: str = ""        # the file name its project publishes it under, where that differs from `filename`

    @property
    def official_file(self) -> str:
        """The file name as its project publishes it (what a user who got it by hand has)."""
        return self.released or self.filename


def _drive(kind: str, name: str, file_id: str, description: str, filename: str | None = None,
           aliases: tuple[str, ...] = ()) -> Checkpoint:
    return Checkpoint(name, filename or f"{name}.pt",
                      (f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t",),
                      f"https://drive.google.com/file/d/{file_id}/view", description, kind=kind, aliases=aliases)


def _github(name: str, size: int, sha256: str, description: str) -> Checkpoint:
    url = f"{_GITHUB_RAW}{name}.pt"
    return Checkpoint(name, f"{name}.pt", (url,), url, description, size, sha256, kind="direction")


# Google Drive ids from the official HyperStyle README / notebooks/notebook_utils.py. Their sizes and hashes are
# not published, so only the files that live in the official repository itself carry size and sha256.
REGISTRY: dict[str, Checkpoint] = {c.name: c for c in [
    _drive("hyperstyle", "hyperstyle_ffhq", "1C3dEIIH1y8w1-zQMCyx7rDF0ndswSXh4",
           "HyperStyle, human faces (FFHQ 1024)"),
    _drive("hyperstyle", "hyperstyle_cars", "1WZ7iNv5ENmxXFn6dzPeue1jQGNp6Nr9d",
           "HyperStyle, cars (Stanford Cars 512)"),
    _drive("hyperstyle", "hyperstyle_afhq_wild", "1OMAKYRp3T6wzGr0s3887rQK-5XHlJ2gp",
           "HyperStyle, wild animals (AFHQ Wild 512)"),
    _drive("w_encoder", "faces_w_encoder", "1M-hsL3W_cJKs77xM1mwq2e9-J0_m7rHP",
           "W-encoder for faces (needed by hyperstyle_ffhq)"),
    _drive("w_encoder", "cars_w_encoder", "1GZke8pfXMSZM9mfT-AbP1Csyddf5fas7", "W-encoder for cars"),
    _drive("w_encoder", "afhq_wild_w_encoder", "1MhEHGgkTpnTanIwuHYv46i6MJeet2Nlr", "W-encoder for AFHQ Wild"),
    _drive("stylegan2", "stylegan2-ffhq-config-f", "1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT",
           "StyleGAN2 FFHQ 1024 generator"),
    _drive("stylegan2", "stylegan2-car-config-f", "1UmMHHB3DU1trTB8_9Fjkck5ZwArnD81B",
           "StyleGAN2 LSUN Car 512 generator"),
    _drive("stylegan2", "afhqwild", "1z6IVVaCJuFTksKwp1CM3emWOVHbrBip-", "StyleGAN-ADA AFHQ Wild 512 generator"),
    _drive("restyle_e4e", "restyle_e4e_ffhq_encode", "1e2oXVeBPXMQoUoC_4TNwAWpOPpSEhE_e",
           "ReStyle-e4e FFHQ encoder (domain adaptation latents)"),
    _drive("stylegan2", "toonify", "1r3XVCt_WYUKFZFxhNH-xO2dTtF6B5szu", "Toonify generator (domain adaptation)"),
    _drive("stylegan2", "pixar", "1trPW-To9L63x5gaXrbAIPkOU0q9f_h05",
           "StyleGAN-NADA Pixar generator (domain adaptation)"),
    _drive("stylegan2", "sketch", "1aHhzmxT7eD90txAN93zCl8o9CUVbMFnD",
           "StyleGAN-NADA sketch generator (domain adaptation)"),
    _drive("stylegan2", "disney_princess", "1rXHZu4Vd0l_KCiCxGbwL9Xtka7n3S2NB",
           "StyleGAN-NADA Disney princess generator (domain adaptation)"),
    _github("age", 2808, "50074516b1629707d89b5e43d6b8abd1792212fa3b961a87a11323d6a5222ae0",
            "InterFaceGAN age direction"),
    _github("smile", 2808, "817a7e732b59dee9eba862bec8bd7e8373568443bc9f9731a21cf9b0356f0653",
            "InterFaceGAN smile direction"),
    _github("pose", 37624, "736e0eacc8488fa0b020a2e7bd256b957284c364191dfea693705e5d06d43e7d",
            "InterFaceGAN pose direction (W+, 1024 models)"),
    # Loss networks for `hyperstyle train` (the links the official HyperStyle / LPIPS / torchvision code uses),
    # saved under the names of their kinds' defaults; `aliases` are the names their projects release them under.
    _drive("ir_se50", "model_ir_se50", "1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn", "IR-SE50 ArcFace (identity loss, faces)",
           "model_ir_se50.pth"),
    Checkpoint("alexnet", "alexnet.pth", ("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",),
               "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", "AlexNet features (LPIPS loss)",
               kind="alexnet", aliases=("alexnet-owt-7be5be79",), released="alexnet-owt-7be5be79.pth"),
    Checkpoint("lpips_alex", "lpips_alex.pth",
               ("https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/weights/v0.1/alex.pth",),
               "https://github.com/richzhang/PerceptualSimilarity/tree/master/lpips/weights/v0.1",
               "LPIPS v0.1 linear layers for AlexNet (LPIPS loss)", kind="lpips_alex_lin", aliases=("alex",),
               released="alex.pth (LPIPS v0.1)"),
    _drive("moco_v2", "moco_v2_800ep_pretrain", "18rLcNGdteX5LwT7sv_F7HWr12HpVEzVe",
           "MoCo-v2 ResNet-50 (similarity loss, cars and wild animals)",
           aliases=("moco_v2_800ep_pretrain.pth",)),        # released as moco_v2_800ep_pretrain.pth.tar
]}

GROUPS: dict[str, tuple[str, ...]] = {
    "faces": ("hyperstyle_ffhq", "faces_w_encoder", "age", "smile", "pose"),
    "domain": ("restyle_e4e_ffhq_encode", "toonify", "pixar", "sketch", "disney_princess"),
    "cars": ("hyperstyle_cars", "cars_w_encoder"),
    "wild": ("hyperstyle_afhq_wild", "afhq_wild_w_encoder"),
    "train_faces": ("alexnet", "lpips_alex", "model_ir_se50"),
    "train_other": ("alexnet", "lpips_alex", "moco_v2_800ep_pretrain"),
}


# An official file by every name it is known under: its download name, its downloaded file's stem, its aliases.
_BY_STEM: dict[str, Checkpoint] = {stem: c for c in REGISTRY.values()
                                   for stem in (c.name, PurePath(c.filename).stem, *c.aliases)}


def official_names(kind: str) -> tuple[str, ...]:
    """The download names of the official files of `kind`, in registry order (e.g. "direction": age, smile,
    pose)."""
    return tuple(c.name for c in REGISTRY.values() if c.kind == kind)


def original_file_kind(stem: str) -> str | None:
    """What an original (unconverted) file holds, judged by its name without the suffix: the kind an official
    checkpoint converts to (known by its download name or a name it is released under), "ganspace" for GANSpace
    statistics (`*_pca`, as the official cars_pca.pt), "clip" for OpenAI's CLIP weights (`ViT-*`, `RN50*`,
    `RN101*`); None for any other name."""
    if stem in _BY_STEM:
        return _BY_STEM[stem].kind
    if stem.endswith("_pca"):
        return "ganspace"
    if stem.startswith(("ViT-", "RN50", "RN101")):
        return "clip"
    return None


def default_files(kind: str) -> tuple[str, ...]:
    """The official files a loader or picker of `kind` starts on, in order of preference: the converted default
    of a model kind (DEFAULT_FILES), the CLIP and GANSpace files as released; () for a kind without one."""
    if kind in DEFAULT_FILES:
        return (DEFAULT_FILES[kind],)
    return _LOADED_AS_RELEASED_DEFAULTS.get(kind, ())


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
