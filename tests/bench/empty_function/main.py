"""The empty function: the cold-start floor every load-test figure is divided by.

Nothing but functions-framework, so spawn -> first success here is what any Python function pays.
"""

import functions_framework


@functions_framework.http
def empty(request):  # noqa: ANN001, ANN201 - functions-framework signature
    return "ok"
