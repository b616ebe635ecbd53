# The environment of every workload, under the names the code reads: shared/config.py sections and each
# service's settings class (functions/<svc>/settings.py), env var = field name upper-cased. Written out in
# full per workload, so that what a service gets can be read in one place; tests/terraform checks these
# maps against the settings classes (every required field provided, no unknown names, secrets only as
# Secret Manager references, and the result validates with NETRA_ENV=staging). Empty values are not set.

locals {
  # Client ids of the sign-in providers turned on only: a provider left out of sign_in_providers stays off even
  # when its id is still in oauth_client_ids.
  oauth_client_ids = { for p in var.sign_in_providers : p => var.oauth_client_ids[p] }

  # X-Forwarded-For entries our own proxies append before a request reaches a workload that limits by client
  # address. auth is a serverless backend of the external HTTPS load balancer (lb.tf) and its ingress admits
  # internal traffic and the load balancer only (functions.tf), so every outside request passes the load
  # balancer, which appends "<client address>, <load balancer address>": the client is the 2nd entry from the
  # right; anything left of it was written by the client. tests/terraform derives this from those two facts.
  trusted_proxy_hops = {
    auth = 2
  }

  service_env = {
    auth = {
      NETRA_ENV                   = var.environment
      SERVICE_NAME                = "auth"
      LOG_LEVEL                   = var.log_level
      LOG_FORMAT                  = "json"
      GOOGLE_CLOUD_PROJECT        = var.project_id
      ALLOWED_ORIGINS             = local.urls.app
      CLOUD_SQL_INSTANCE          = google_sql_database_instance.main.connection_name
      DB_NAME                     = google_sql_database.netra.name
      DB_USER                     = local.db_iam_users["auth"]
      DB_IAM_AUTH                 = "true"
      DB_IP_TYPE                  = "private"
      DB_POOL_SIZE                = tostring(var.db_pool_size)
      FIRESTORE_COLLECTION_PREFIX = var.firestore_collection_prefix
      AUTH_PUBLIC_URL             = local.urls.auth
      AUTH_ISSUER                 = local.urls.auth
      TOKEN_AUDIENCE              = "netra-apex"
      TOKEN_KEYSET_SECRET         = local.secret_resource["auth-signing-keys"]
      TRUSTED_PROXY_HOPS          = tostring(local.trusted_proxy_hops.auth)
      # A provider's sign-in is on when its client id is set (its secret comes from secret_env below).
      GOOGLE_CLIENT_ID = lookup(local.oauth_client_ids, "google", "")
      GITHUB_CLIENT_ID = lookup(local.oauth_client_ids, "github", "")
    }
    "agent-api" = {
      NETRA_ENV                   = var.environment
      SERVICE_NAME                = "agent-api"
      LOG_LEVEL                   = var.log_level
      LOG_FORMAT                  = "json"
      GOOGLE_CLOUD_PROJECT        = var.project_id
      ALLOWED_ORIGINS             = local.urls.app
      CLOUD_SQL_INSTANCE          = google_sql_database_instance.main.connection_name
      DB_NAME                     = google_sql_database.netra.name
      DB_USER                     = local.db_iam_users["agent-api"]
      DB_IAM_AUTH                 = "true"
      DB_IP_TYPE                  = "private"
      DB_POOL_SIZE                = tostring(var.db_pool_size)
      FIRESTORE_COLLECTION_PREFIX = var.firestore_collection_prefix
      AUTH_ISSUER                 = local.urls.auth
      TOKEN_AUDIENCE              = "netra-apex"
      AUTH_JWKS_URL               = "${local.urls.auth}/.well-known/jwks.json"
    }
    "agent-worker" = {
      NETRA_ENV                   = var.environment
      SERVICE_NAME                = "agent-worker"
      LOG_LEVEL                   = var.log_level
      LOG_FORMAT                  = "json"
      GOOGLE_CLOUD_PROJECT        = var.project_id
      ALLOWED_ORIGINS             = local.urls.app
      CLOUD_SQL_INSTANCE          = google_sql_database_instance.main.connection_name
      DB_NAME                     = google_sql_database.netra.name
      DB_USER                     = local.db_iam_users["agent-worker"]
      DB_IAM_AUTH                 = "true"
      DB_IP_TYPE                  = "private"
      DB_POOL_SIZE                = tostring(var.db_pool_size)
      FIRESTORE_COLLECTION_PREFIX = var.firestore_collection_prefix
      LLM_MODELS                  = var.llm_models
      GEMINI_VERTEX               = tostring(var.gemini_vertex)
      GEMINI_LOCATION             = var.gemini_location
      MAX_CONCURRENT_RUNS         = tostring(local.function_sizing["agent-worker"].concurrency)
    }
    "ws-bridge" = {
      NETRA_ENV                   = var.environment
      SERVICE_NAME                = "ws-bridge"
      LOG_LEVEL                   = var.log_level
      LOG_FORMAT                  = "json"
      GOOGLE_CLOUD_PROJECT        = var.project_id
      ALLOWED_ORIGINS             = local.urls.app
      CLOUD_SQL_INSTANCE          = google_sql_database_instance.main.connection_name
      DB_NAME                     = google_sql_database.netra.name
      DB_USER                     = local.db_iam_users["ws-bridge"]
      DB_IAM_AUTH                 = "true"
      DB_IP_TYPE                  = "private"
      DB_POOL_SIZE                = tostring(var.db_pool_size)
      FIRESTORE_COLLECTION_PREFIX = var.firestore_collection_prefix
      AUTH_ISSUER                 = local.urls.auth
      TOKEN_AUDIENCE              = "netra-apex"
      AUTH_JWKS_URL               = "${local.urls.auth}/.well-known/jwks.json"
      AUTH_URL                    = local.urls.auth
      AGENT_API_URL               = local.urls.api
    }
    migrate = {
      NETRA_ENV            = var.environment
      SERVICE_NAME         = "migrate"
      LOG_LEVEL            = var.log_level
      LOG_FORMAT           = "json"
      GOOGLE_CLOUD_PROJECT = var.project_id
      ALLOWED_ORIGINS      = local.urls.app
      CLOUD_SQL_INSTANCE   = google_sql_database_instance.main.connection_name
      DB_NAME              = google_sql_database.netra.name
      DB_USER              = local.db_migrate_user
      DB_IAM_AUTH          = "false"
      DB_IP_TYPE           = "private"
      DB_APP_ROLES         = join(",", values(local.db_iam_users))
    }
    rollup = {
      NETRA_ENV            = var.environment
      SERVICE_NAME         = "rollup"
      LOG_LEVEL            = var.log_level
      LOG_FORMAT           = "json"
      GOOGLE_CLOUD_PROJECT = var.project_id
      ALLOWED_ORIGINS      = local.urls.app
      CLOUD_SQL_INSTANCE   = google_sql_database_instance.main.connection_name
      DB_NAME              = google_sql_database.netra.name
      DB_USER              = local.db_iam_users["rollup"]
      DB_IAM_AUTH          = "true"
      DB_IP_TYPE           = "private"
      DB_POOL_SIZE         = "2"
    }
  }

  # Secrets a workload reads itself from Secret Manager's latest version at run time (so they rotate without
  # a redeploy); its settings hold the secret's resource name (local.secret_resource).
  secret_readers = {
    auth = ["auth-signing-keys"]
  }

  # Environment variable => key in local.secrets. Injected from the secret's latest version by the platform;
  # the workload's service account gets secretAccessor on exactly these secrets.
  secret_env = {
    auth = {
      GOOGLE_CLIENT_SECRET = "google-oauth-client-secret"
      GITHUB_CLIENT_SECRET = "github-oauth-client-secret"
    }
    "agent-api" = {}
    "agent-worker" = {
      GEMINI_API_KEY = "gemini-api-key"
      OPENAI_API_KEY = "openai-api-key"
    }
    "ws-bridge" = {}
    migrate = {
      DB_PASSWORD = "db-migrator-password"
    }
    rollup = {}
  }
}
