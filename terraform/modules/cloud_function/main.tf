# A Cloud Functions gen2 function built from a source archive, with its settings as environment variables
# and its secrets as references to Secret Manager (values never pass through Terraform).

resource "google_cloudfunctions2_function" "this" {
  project     = var.project_id
  location    = var.region
  name        = var.name
  description = var.description
  labels      = var.labels

  build_config {
    runtime           = var.runtime
    entry_point       = var.entry_point
    service_account   = var.build_service_account
    docker_repository = var.docker_repository
    # The Python buildpack starts the framework with this signature; without it a push-triggered worker
    # would be served as an http function.
    # SOURCE_DATE_EPOCH: the buildpack compiles the source (`python3 -m compileall -f .`) and the image export
    # then resets every file's mtime to a constant (reproducible builds), so default timestamp pycs never
    # match and each cold instance compiles every module again. With SOURCE_DATE_EPOCH set, compileall writes
    # checked-hash pycs (PEP 552), valid whatever the mtimes (docs/PERFORMANCE.md, "Bytecode").
    environment_variables = { GOOGLE_FUNCTION_SIGNATURE_TYPE = var.signature_type, SOURCE_DATE_EPOCH = "315532801" }
    source {
      storage_source {
        bucket = var.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    min_instance_count               = var.min_instances
    max_instance_count               = var.max_instances
    available_memory                 = var.memory
    available_cpu                    = var.cpu
    max_instance_request_concurrency = var.concurrency
    timeout_seconds                  = var.timeout_seconds
    ingress_settings                 = var.ingress
    all_traffic_on_latest_revision   = var.all_traffic_on_latest_revision
    service_account_email            = var.service_account_email
    vpc_connector                    = var.vpc_connector
    vpc_connector_egress_settings    = "PRIVATE_RANGES_ONLY"
    # gunicorn threads = concurrency, so admitted requests are served rather than queued in the instance.
    environment_variables = merge(var.environment, { THREADS = tostring(var.concurrency) })

    dynamic "secret_environment_variables" {
      for_each = var.secret_environment
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }
}
