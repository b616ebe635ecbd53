# Private networking: Cloud SQL has no public IP; serverless workloads reach it through a VPC connector.

resource "google_compute_network" "vpc" {
  project                 = var.project_id
  name                    = "${var.name_prefix}-vpc"
  auto_create_subnetworks = false
  depends_on              = [time_sleep.apis]
}

resource "google_compute_subnetwork" "connector" {
  project                  = var.project_id
  name                     = "${var.name_prefix}-connector"
  region                   = var.region
  network                  = google_compute_network.vpc.id
  ip_cidr_range            = "10.8.0.0/28"
  private_ip_google_access = true
  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Nothing in this network accepts connections from outside it; the connector's own traffic is allowed by
# the implicit rules Serverless VPC Access adds.
resource "google_compute_firewall" "deny_ingress" {
  project   = var.project_id
  name      = "${var.name_prefix}-deny-ingress"
  network   = google_compute_network.vpc.id
  direction = "INGRESS"
  priority  = 65534
  deny {
    protocol = "all"
  }
  source_ranges = ["0.0.0.0/0"]
  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_global_address" "private_services" {
  project       = var.project_id
  name          = "${var.name_prefix}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 20
  network       = google_compute_network.vpc.id
}

# On destroy, Service Networking refuses to delete the connection while Cloud SQL still holds resources behind
# it, which it keeps for a while after the instance is gone (provider issues 16275, 18834, 19908): ABANDON drops
# it from the state instead. That leaves the VPC peering the connection created, which blocks deleting the
# network: terraform_data.private_services_peering removes it. update_on_creation_fail: Service Networking
# still tracks an abandoned connection, so a new apply in the same project updates it instead of failing.
resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.vpc.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
  deletion_policy         = "ABANDON"
  update_on_creation_fail = true
}

# Removes the connection's peering on destroy, after the Cloud SQL instance (which depends on this) and before
# the network (which this depends on). Destroy-time commands may only read self, hence the input. A peering
# that is already gone is not an error.
resource "terraform_data" "private_services_peering" {
  input = {
    project = var.project_id
    network = google_compute_network.vpc.name
  }

  provisioner "local-exec" {
    when    = destroy
    command = "gcloud compute networks peerings delete servicenetworking-googleapis-com --network=${self.output.network} --project=${self.output.project} --quiet || echo 'peering already removed'"
  }
}

resource "google_vpc_access_connector" "serverless" {
  project       = var.project_id
  name          = "${var.name_prefix}-conn"
  region        = var.region
  machine_type  = "e2-micro"
  min_instances = 2
  max_instances = 3
  subnet {
    name = google_compute_subnetwork.connector.name
  }
}
