# Topics and subscriptions come from shared/pubsub_topology.json, the file the code and the local stack
# read: one definition. A topic's dead_letter_topic applies to every subscription declared on it; a
# subscription's push_to names the workload it pushes to (local.push_endpoints). The ws_bridge's
# per-instance subscriptions are created by each instance at start (see iam.tf), not here.

locals {
  push_endpoints = {
    "agent-worker" = module.function["agent-worker"].uri
  }
  dead_letter_of = {
    for sub, cfg in local.topology.subscriptions : sub => try(local.topology.topics[cfg.topic].dead_letter_topic, null)
  }
  dlq_subscriptions = { for sub, dlq in local.dead_letter_of : sub => dlq if dlq != null }
}

resource "google_pubsub_topic" "topic" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption; messages hold run ids and events of one platform, and CMEK would add a KMS key and its rotation to every environment without a requirement for it.
  for_each                   = local.topology.topics
  project                    = var.project_id
  name                       = each.key
  labels                     = local.labels
  message_retention_duration = "86400s"
  depends_on                 = [time_sleep.apis]
}

resource "google_pubsub_subscription" "subscription" {
  for_each                   = local.topology.subscriptions
  project                    = var.project_id
  name                       = each.key
  topic                      = google_pubsub_topic.topic[each.value.topic].id
  labels                     = local.labels
  ack_deadline_seconds       = try(each.value.ack_deadline_seconds, 10)
  enable_message_ordering    = try(each.value.enable_message_ordering, false)
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }

  # From the topology file, as the local stack reads it: a refused push (429 when a worker's run slots are
  # full) is retried after a backoff instead of burning its delivery attempts in a second.
  retry_policy {
    minimum_backoff = "${try(each.value.retry_policy.minimum_backoff_seconds, 10)}s"
    maximum_backoff = "${try(each.value.retry_policy.maximum_backoff_seconds, 600)}s"
  }

  dynamic "push_config" {
    for_each = try(each.value.push_to, null) == null ? [] : [each.value.push_to]
    content {
      push_endpoint = local.push_endpoints[push_config.value]
      oidc_token {
        service_account_email = google_service_account.pubsub_push.email
        audience              = local.push_endpoints[push_config.value]
      }
    }
  }

  dynamic "dead_letter_policy" {
    for_each = local.dead_letter_of[each.key] == null ? [] : [local.dead_letter_of[each.key]]
    content {
      dead_letter_topic     = google_pubsub_topic.topic[dead_letter_policy.value].id
      max_delivery_attempts = try(each.value.max_delivery_attempts, 5)
    }
  }
}

# The Pub/Sub service agent moves undeliverable messages: it must publish to the dead-letter topic and
# acknowledge on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = toset([for t, cfg in local.topology.topics : try(cfg.dead_letter_topic, "") if try(cfg.dead_letter_topic, "") != ""])
  project  = var.project_id
  topic    = google_pubsub_topic.topic[each.value].name
  role     = "roles/pubsub.publisher"
  member   = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each     = local.dlq_subscriptions
  project      = var.project_id
  subscription = google_pubsub_subscription.subscription[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
