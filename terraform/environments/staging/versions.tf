terraform {
  required_version = ">= 1.11"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.50"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.7"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.7"
    }
    # time_sleep: the waits a first apply needs (API enablement, IAM propagation, new log-based metrics).
    time = {
      source  = "hashicorp/time"
      version = "~> 0.13"
    }
  }
  # State in GCS; the bucket and prefix come from backend.hcl (see backend.hcl.example):
  #   terraform init -backend-config=backend.hcl
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}
