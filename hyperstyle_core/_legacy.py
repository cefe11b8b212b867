"""Release 0.1 module paths (`hyperstyle_core.checkpoints`, `.batch`, ...) as aliases of the new layout.

Kept for one release so that user code importing the old flat modules keeps working; importing one warns with a
DeprecationWarning that names the new module. An old module that was split maps to a module object that carries the
public names of all its parts.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

# old module -> new modules (relative to the package); names of several parts are merged in this order
OLD_MODULES: dict[str, tuple[str, ...]] = {
    "ops": ("nn.ops",),
    "stylegan2": ("nn.stylegan2",),
    "encoders": ("nn.encoders",),
    "hypernetwork": ("nn.hypernetwork",),
    "models": ("nn.networks", "nn.configs"),
    "editing": ("editing.directions", "io.directions"),
    "interfacegan": ("editing.interfacegan", "io.directions"),
    "ganspace": ("editing.ganspace",),
    "styleclip": ("editing.styleclip",),
    "animation": ("editing.animation",),
    "alignment": ("face.alignment", "face.info", "face.paste_back", "face.arrays"),
    "io_utils": ("io.files", "io.formats"),
    "checkpoints": ("io.checkpoints", "io.convert", "io.unpickle", "nn.configs"),
    "latents": ("io.latents",),
    "images": ("io.images",),
    "download": ("io.download",),
    "batch": ("run.runner", "run.options", "run.naming", "run.manifest", "run.models", "run.steps",
              "io.folders"),
    "cli_edit": ("cli.editing",),
    "bench": ("cli.bench",),
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, package: str, old: str):
        self.package, self.old = package, old

    def create_module(self, spec):
        parts = [importlib.import_module(f"{self.package}.{new}") for new in OLD_MODULES[self.old]]
        warnings.warn(f"{self.package}.{self.old} moved to "
                      f"{', '.join(f'{self.package}.{new}' for new in OLD_MODULES[self.old])}; the old path works "
                      f"until the next release", DeprecationWarning, stacklevel=4)
        module = types.ModuleType(spec.name, parts[0].__doc__)
        for part in reversed(parts):                  # the first part wins on a name clash
            module.__dict__.update({k: v for k, v in vars(part).items() if not k.startswith("__")})
        module.__dict__["__moved_to__"] = tuple(p.__name__ for p in parts)
        return module

    def exec_module(self, module):
        pass

    def get_code(self, fullname):
        # `python -m hyperstyle_core.bench` (documented in release 0.1) runs the moved module's main().
        target = f"{self.package}.{OLD_MODULES[self.old][0]}"
        return compile(f"import sys, {target} as _m\nsys.exit(_m.main())", f"<{fullname}>", "exec")


class _AliasFinder(importlib.abc.MetaPathFinder):
    def __init__(self, package: str):
        self.package = package

    def find_spec(self, fullname, path=None, target=None):
        head, _, old = fullname.rpartition(".")
        if head != self.package or old not in OLD_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(self.package, old))


def install(package: str) -> None:
    """Make `<package>.<old module>` importable (once per package name: the pack may be loaded under two names)."""
    if not any(isinstance(f, _AliasFinder) and f.package == package for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder(package))
