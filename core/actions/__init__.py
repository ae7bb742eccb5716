"""Calling functions: what ``ctx.call_function`` / ``ctx.run_branches`` do (SPEC §4).

* :mod:`~isolde.actions.spec`: what an action is once compiled (``ActionSpec``, ``Branch``,
  ``Outcome``); :mod:`~isolde.actions.compile`: compiling an ``action`` mapping at load;
* :mod:`~isolde.actions.call`: ``Functions``, one action start to end (input, secrets,
  retries, the runner); :mod:`~isolde.actions.branches`: several at once;
* :mod:`~isolde.actions.folders`: the action folder side of a call (files in, the sidecar
  grant, ``out/`` back); :mod:`~isolde.actions.secrets`; :mod:`~isolde.actions.caller`.

Nothing is re-exported here: importing ``isolde.actions.compile`` (done at every engine
start) must not import the sidecar and the files machinery, which ``call`` needs.
"""
