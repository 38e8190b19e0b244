"""pytest plugin for mutmut runs of genforge (-p mutmut_genforge_plugin): 1) mutmut 3 trampolines vs uvicorn.

mutmut wraps every mutated async method in ``async def _trampoline_wrapper(*args, **kwargs)``. uvicorn's
Config.load() calls the app with no arguments and relies on the TypeError to tell an ASGI app from an app
factory; the wrapper swallows that (it just returns a coroutine), so uvicorn takes the Guard middleware for a
factory, then for an ASGI2 app, and every request fails. This shim hands uvicorn a plain ASGI3 object with an
exact (scope, receive, send) signature that forwards to the real (possibly mutated) app. Behaviour is
otherwise unchanged; without mutmut it is a no-op wrapper.
"""
from __future__ import annotations

try:
    import uvicorn.config as _uc
except ImportError:  # pragma: no cover
    _uc = None


class _ASGI3:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        return await self.app(scope, receive, send)

    def __getattr__(self, name):
        return getattr(self.app, name)


if _uc is not None and not getattr(_uc.Config.load, "_mutmut_shim", False):
    _orig_load = _uc.Config.load

    def load(self):
        app = self.app
        if not self.factory and not isinstance(app, (str, _ASGI3)) and \
                type(app).__module__.startswith("genforge."):
            self.app = _ASGI3(app)
        return _orig_load(self)

    load._mutmut_shim = True
    _uc.Config.load = load


# --- cheap test files first ------------------------------------------------------------------------
# mutmut runs each mutant's covering tests with -x, in collection order (an arbitrary set order of node
# ids). Running the fast unit-test files first and the ones with expensive fixtures (CLI subprocess
# training, chat, serve subprocesses, DDP) last makes killed mutants die in seconds. Which tests run,
# and so which mutants are killed, is unchanged: only the order within one mutant's run.
_FILE_ORDER = ["test_sampling.py", "test_optim.py", "test_codecs.py", "test_data.py", "test_serve_validation.py",
               "test_serve_errors.py", "test_serve.py", "test_models.py", "test_train.py", "test_chat.py",
               "test_serve_reliability.py", "test_cli.py"]


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        name = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
        return _FILE_ORDER.index(name) if name in _FILE_ORDER else len(_FILE_ORDER) // 2

    items.sort(key=rank)  # stable: the order inside a file is kept
