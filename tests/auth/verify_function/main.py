"""A second, freshly started service that only verifies tokens with shared.tokens.verify (scenario 23).

GET / with ``Authorization: Bearer <token>`` -> 200 {sub, email, kid} or 401 {error: reason}.
"""

import functions_framework

from shared.config import CommonSection, TokenVerifySection, load_settings
from shared.http import bearer_token
from shared.tokens.verify import KeySetUnavailable, TokenInvalid, verifier_from_settings


class VerifySettings(CommonSection, TokenVerifySection):
    pass


settings = load_settings(VerifySettings)
verifier = verifier_from_settings(settings)


@functions_framework.http
def verify(request):  # noqa: ANN001, ANN201 - functions-framework signature
    token = bearer_token(request.headers)
    if not token:
        return {"error": "missing_token"}, 401
    try:
        claims = verifier.verify(token)
    except TokenInvalid as exc:
        return {"error": exc.reason}, 401
    except KeySetUnavailable:
        return {"error": "keyset_unavailable"}, 503, {"Retry-After": "2"}
    return {"sub": claims.sub, "email": claims.email, "kid": claims.kid, "fetches": verifier.fetches}
