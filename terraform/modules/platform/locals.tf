locals {
  repo_root = abspath("${path.module}/../../..")

  hosts = {
    auth = "auth.${var.hostname_suffix}"
    api  = "api.${var.hostname_suffix}"
    ws   = "ws.${var.hostname_suffix}"
    app  = "app.${var.hostname_suffix}"
    # Usage ingestion (OTLP POST /v1/traces, LiteLLM POST /v1/litellm): served by the agent API (docs/INGESTION.md).
    ingest = "ingest.${var.hostname_suffix}"
  }
  urls = { for k, h in local.hosts : k => "https://${h}" }

  labels = {
    app         = var.name_prefix
    environment = var.environment
    managed-by  = "terraform"
  }

  # One definition of the Pub/Sub topology, shared with the code and the local stack.
  topology = jsondecode(file("${local.repo_root}/shared/pubsub_topology.json"))

  # What each workload touches; IAM below is derived from it, so nothing gets a grant it does not use.
  # database: "iam" = logs in as its service account (IAM database authentication), "password" = the
  # migration user, whose password is in Secret Manager. publishes: topics it publishes to (the agent API
  # publishes requests, the terminal event of a run whose worker died, and rollup refreshes of live ingestion).
  workloads = {
    auth           = { database = "iam", firestore = true, publishes = [] }
    "agent-api"    = { database = "iam", firestore = true, publishes = ["agent-requests", "agent-events", "usage-rollups"] }
    "agent-worker" = { database = "iam", firestore = true, publishes = ["agent-events"] }
    "ws-bridge"    = { database = "iam", firestore = true, publishes = [] }
    migrate        = { database = "password", firestore = false, publishes = [] }
    rollup         = { database = "iam", firestore = false, publishes = [] }
  }

  # Cloud SQL names an IAM service-account user by its e-mail without ".gserviceaccount.com".
  db_iam_users = {
    for w, cfg in local.workloads : w => trimsuffix(google_service_account.workload[w].email, ".gserviceaccount.com")
    if cfg.database == "iam"
  }
  db_migrate_user = "netra_migrator"
}
