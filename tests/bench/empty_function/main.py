"""The empty function: the cold-start floor every load-test figure is divided by.

Nothing but functions-framework, so spawn -> first success here is what any Python function pays.

BENCH_FLOOR_IMPORTS (comma-separated modules, unset by default) makes it import those libraries first and nothing
else: `BENCH=coldstart` uses it to measure each service's library floor, what the third-party libraries its first
success cannot do without cost before a line of the project runs.
"""

import importlib
import os

import functions_framework

for _name in filter(None, os.environ.get("BENCH_FLOOR_IMPORTS", "").split(",")):
    importlib.import_module(_name)


@functions_framework.http
def empty(request):  # noqa: ANN001, ANN201 - functions-framework signature
    return "ok"
