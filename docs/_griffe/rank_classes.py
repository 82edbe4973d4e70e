"""A griffe extension: the public 1D/2D/3D layers made by `rank_classes`, for the API pages.

`keras_hyperbolic.layers.rank_classes.rank_classes` makes `WaveletPooling1D`,
`WaveletPooling2D`, ... at import time (`A1D, A2D, A3D = rank_classes(Base, "A", doc)`),
so griffe's static reading of the source finds no class under those names. For each
such assignment this extension imports the module and takes the classes from
griffe's dynamic inspection (docstring and signature as Python sees them); every
other object is still read statically.
"""

import ast
import sys

import griffe


def _rank_class_names(module_node):
    """Names bound at module level by `... = rank_classes(...)`."""
    names = []
    for node in module_node.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        function = node.value.func
        called = function.id if isinstance(function, ast.Name) else getattr(function, "attr", None)
        if called != "rank_classes":
            continue
        for target in node.targets:
            elements = target.elts if isinstance(target, ast.Tuple) else [target]
            names += [element.id for element in elements if isinstance(element, ast.Name)]
    return names


class RankClasses(griffe.Extension):
    """Replaces the names bound by `rank_classes(...)` with the inspected classes."""

    def on_module_members(self, *, node, mod, agent, **kwargs):
        if not isinstance(node, ast.Module):  # already an inspection
            return
        names = _rank_class_names(node)
        if not names:
            return
        # Import from the checkout griffe reads (griffe imports with these paths only).
        levels = mod.path.count(".") + (mod.filepath.name == "__init__.py")
        root = str(mod.filepath.parents[levels])
        inspected = griffe.inspect(
            mod.path,
            filepath=mod.filepath,
            import_paths=[root, *sys.path],
            docstring_parser=agent.docstring_parser,
            docstring_options=agent.docstring_options,
        )
        for name in names:
            mod.set_member(name, inspected[name])
