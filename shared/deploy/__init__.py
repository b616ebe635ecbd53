"""Deploy helpers run by an operator or CI against a deployed environment (not imported by services).

``python -m shared.deploy status|promote|rollback --service NAME --region R --project P``: revisions and
their health, move traffic to a revision only after its health check passes, roll back to the previous one
(:mod:`shared.deploy.traffic`). ``python -m shared.deploy grant-db``: after migrations, grant the services'
IAM database users what they need (:mod:`shared.deploy.db_grants`; run by the migration job).
``python -m shared.deploy release start|watch|abort``: canary releases in steps with a gate on the candidate's
own Cloud Monitoring figures against the stable revision's, and automatic rollback
(:mod:`shared.deploy.canary`, :mod:`shared.deploy.gate`, :mod:`shared.deploy.metrics`,
:mod:`shared.deploy.release_policy`, :mod:`shared.deploy.release_watch`).
"""
