"""Entry point of the auth function (functions-framework target ``auth``).

The app is built by functions/auth/app.py (create_app); this module holds only what the runtime looks up.
"""

import functions_framework

from functions.auth.app import create_app
from functions.auth.settings import AuthSettings
from shared.config import load_settings
from shared.http import json_not_found

app = create_app(load_settings(AuthSettings))

functions_framework.errorhandler(404)(json_not_found)  # paths the catch-all route cannot match


@functions_framework.http
def auth(request):  # noqa: ANN001, ANN201 - functions-framework signature
    return app.http(request)
