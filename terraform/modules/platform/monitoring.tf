# Log-based metrics and alert policies: 5xx rate, cold-start latency (the startup manager's
# "startup complete" line carries startup_ms), dead-letter depth, and Cloud SQL connection errors.

locals {
  # Logging query language; gen2 functions log as cloud_run_revision under their function name.
  cloud_run_resources = "resource.type=(\"cloud_run_revision\" OR \"cloud_run_job\") AND (resource.labels.service_name=~\"^${var.name_prefix}-\" OR resource.labels.job_name=~\"^${var.name_prefix}-\")"
  metric_resources    = "resource.type=one_of(\"cloud_run_revision\", \"cloud_run_job\")"
}

resource "google_monitoring_notification_channel" "email" {
  for_each     = toset(var.alert_emails)
  project      = var.project_id
  display_name = "Netra ${var.environment} alerts: ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }
  depends_on = [time_sleep.apis]
}

resource "google_logging_metric" "http_5xx" {
  project     = var.project_id
  name        = "${var.name_prefix}/http_5xx"
  description = "Requests answered with a 5xx by any Netra service (request logs)."
  filter      = "${local.cloud_run_resources} AND httpRequest.status>=500"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "service"
      value_type  = "STRING"
      description = "Cloud Run service name"
    }
  }
  label_extractors = {
    service = "EXTRACT(resource.labels.service_name)"
  }
  depends_on = [time_sleep.apis]
}

resource "google_logging_metric" "startup_ms" {
  project     = var.project_id
  name        = "${var.name_prefix}/startup_ms"
  description = "Milliseconds from process start to every critical component up (startup manager's 'startup complete' line)."
  filter      = "${local.cloud_run_resources} AND jsonPayload.message=\"startup complete\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "ms"
    labels {
      key         = "service"
      value_type  = "STRING"
      description = "the service field of the log line"
    }
  }
  value_extractor = "EXTRACT(jsonPayload.startup_ms)"
  label_extractors = {
    service = "EXTRACT(jsonPayload.service)"
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 32
      growth_factor      = 1.4
      scale              = 10
    }
  }
  depends_on = [time_sleep.apis]
}

resource "google_logging_metric" "db_connection_errors" {
  project     = var.project_id
  name        = "${var.name_prefix}/db_connection_errors"
  description = "Failed database connections: the services' startup manager retrying or giving up on 'database', and Cloud SQL's own authentication and connection errors."
  filter = join(" OR ", [
    "(${local.cloud_run_resources} AND jsonPayload.component=\"database\" AND severity>=WARNING)",
    "(resource.type=\"cloudsql_database\" AND severity>=ERROR AND (textPayload:\"authentication failed\" OR textPayload:\"connection\" OR textPayload:\"too many clients\"))",
  ])
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
  depends_on = [time_sleep.apis]
}

locals {
  notification_channels = [for c in google_monitoring_notification_channel.email : c.id]
}

# A new log-based metric is unknown to Cloud Monitoring for up to ten minutes: an alert policy on it is refused
# with "Cannot find metric(s) ... could take up to 10 minutes", which the provider does not retry (provider issue
# 11102). The policies wait here. On a first apply the metrics are created within two minutes and Cloud SQL
# takes about as long as this wait, so it adds little; it runs again only when a metric is replaced.
resource "time_sleep" "log_metrics" {
  create_duration = "600s"
  triggers = {
    metrics = jsonencode([
      google_logging_metric.http_5xx.id,
      google_logging_metric.startup_ms.id,
      google_logging_metric.db_connection_errors.id,
    ])
  }
}

resource "google_monitoring_alert_policy" "http_5xx" {
  project               = var.project_id
  display_name          = "Netra ${var.environment}: 5xx responses"
  combiner              = "OR"
  notification_channels = local.notification_channels
  documentation {
    content   = "A Netra service answers 5xx. Check /health/startup of the service and its logs (severity>=ERROR)."
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "more than 5 5xx per minute for 5 minutes"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.http_5xx.name}\" AND ${local.metric_resources}"
      comparison      = "COMPARISON_GT"
      threshold_value = 5
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.service"]
      }
    }
  }
  depends_on = [time_sleep.log_metrics]
}

resource "google_monitoring_alert_policy" "cold_start" {
  project               = var.project_id
  display_name          = "Netra ${var.environment}: slow cold starts"
  combiner              = "OR"
  notification_channels = local.notification_channels
  documentation {
    content   = "95th percentile of startup_ms above ${var.cold_start_alert_ms} ms. /health/startup shows which component is slow; consider min instances."
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "p95 startup_ms over ${var.cold_start_alert_ms} ms"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.startup_ms.name}\" AND ${local.metric_resources}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.cold_start_alert_ms
      duration        = "0s"
      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_PERCENTILE_95"
        cross_series_reducer = "REDUCE_MAX"
        group_by_fields      = ["metric.label.service"]
      }
    }
  }
  depends_on = [time_sleep.log_metrics]
}

resource "google_monitoring_alert_policy" "dead_letters" {
  project               = var.project_id
  display_name          = "Netra ${var.environment}: messages in a dead-letter topic"
  combiner              = "OR"
  notification_channels = local.notification_channels
  documentation {
    content   = "Messages failed delivery max_delivery_attempts times and were dead-lettered. Inspect them with `gcloud pubsub subscriptions pull <topic>-pull --limit=10` (without --auto-ack)."
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "undelivered messages in a *-dlq-pull subscription"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=ends_with(\"-dlq-pull\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "60s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }
  depends_on = [google_pubsub_subscription.subscription]
}

resource "google_monitoring_alert_policy" "db_connection_errors" {
  project               = var.project_id
  display_name          = "Netra ${var.environment}: Cloud SQL connection errors"
  combiner              = "OR"
  notification_channels = local.notification_channels
  documentation {
    content   = "Services fail to connect to Cloud SQL (wrong IAM user, missing role, connection limit, instance down). /health/startup names the cause."
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "more than 3 connection errors in 5 minutes"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.db_connection_errors.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 3
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
  depends_on = [time_sleep.log_metrics]
}
