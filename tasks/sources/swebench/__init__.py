"""SWE-bench: instances in, predictions and an evaluation by the official rules out.

For each instance, ``run`` builds the environment (the repository at ``base_commit`` from a
local mirror, or cloned from GitHub when online, with the spec's install step), shows the model
the files the issue is about, samples ``n`` candidate patches and picks one **without the
hidden tests**: every distinct candidate runs the repository's own tests that go with the files
shown (found by name: ``foo.py`` → ``test_foo.py``) and reproduction tests the model wrote
from the issue, kept when they fail on the unpatched code for the issue's reason (the same
implementation as issue-only repair: ``tasks/reproduction.py``). A candidate passes selection
when no test that passed before fails and it passes at least one kept reproduction test;
ranking (:mod:`patchswarm.agent.ranking`) puts regressions first, then the reproduction tests
passed, then votes. Only the pick (or, with ``eval_all``, every distinct candidate) is then
evaluated with ``test_patch`` by SWE-bench's rules (:func:`evaluate_patch`).

``evaluate_predictions`` does the last step for any system's ``predictions.jsonl``; with the
dataset's gold patches it checks the harness itself.

Every instance has its own folder; whatever a step wrote is reused when the same command runs
again, so an interrupted run continues. A bad row, a missing commit, an environment that does
not build or tests that run past their time limit give that instance a clear error in the
report; the other instances go on.

The parts: ``swebench_data`` (instances, predictions), ``swebench_repos`` (mirrors),
``swebench_specs`` and ``swebench_env`` (per-repository specs, environment builds),
``swebench_patch`` (one patch evaluated), ``swebench_select`` (selection without
``test_patch``), ``swebench_run`` (``swebench run``), ``swebench_eval`` (``swebench eval`` and
the gold check). This module gathers their public names.
"""


from __future__ import annotations

from patchswarm.tasks.sources.swebench.data import (  # noqa: F401 - the public names of this module
    DEFAULT_DATASET,
    PREDICTION_KEYS,
    REQUIRED_FIELDS,
    BadRow,
    DatasetError,
    InfraError,
    Instance,
    InstanceError,
    load_dataset,
    load_predictions,
    parse_rows,
    select_instances,
)
from patchswarm.tasks.sources.swebench.eval import (  # noqa: F401
    evaluate_predictions,
    gold_predictions,
    gold_table,
)
from patchswarm.tasks.sources.swebench.patch import (  # noqa: F401
    EnvInfo,
    EvalResult,
    SWEBenchSettings,
    _folder_name,
    _sha,
    eval_script,
    evaluate_patch,
    prepare_environment,
    time_limit,
)
from patchswarm.tasks.sources.swebench.repos import (  # noqa: F401
    _clone,
    _git,
    ensure_repo,
    mirror_path,
    trust_mirror,
)
from patchswarm.tasks.sources.swebench.run import (  # noqa: F401
    InstanceResult,
    SamplerFor,
    report_markdown,
    run_instance,
    run_report,
    run_swebench,
    write_predictions,
)
from patchswarm.tasks.sources.swebench.select import (  # noqa: F401
    context_files,
    related_test_files,
    reproduction,
)
