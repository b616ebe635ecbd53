# Firestore (native mode) for short-lived, real-time state, with TTL policies on `expires_at` for every
# collection whose documents expire (names go through FIRESTORE_COLLECTION_PREFIX, as collection_name() does).
# tests/terraform/test_firestore_ttl.py derives the list from the code and fails when the two differ.

locals {
  # Collection (group) ids whose documents carry expires_at. "events" is the collection group of
  # runs/{run_id}/events/{seq}; a TTL policy on a field applies to the whole collection group.
  ttl_collections = [
    "auth_codes",
    "events",
    "oauth_states",
    "rate_limits",
    "refresh_families",
    "refresh_tokens",
    "runs",
    "ws_tickets",
  ]
}

resource "google_firestore_database" "main" {
  project                           = var.project_id
  name                              = "(default)"
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "OPTIMISTIC"
  point_in_time_recovery_enablement = var.deletion_protection ? "POINT_IN_TIME_RECOVERY_ENABLED" : "POINT_IN_TIME_RECOVERY_DISABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.deletion_protection ? "ABANDON" : "DELETE"
  depends_on                        = [time_sleep.apis]
}

resource "google_firestore_field" "ttl" {
  for_each   = toset(local.ttl_collections)
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = "${var.firestore_collection_prefix}${each.key}"
  field      = "expires_at"

  ttl_config {}

  # No single-field index on a monotonically increasing timestamp: it would hot-spot writes, and nothing
  # queries by expires_at (readers filter expired documents themselves).
  index_config {}
}
