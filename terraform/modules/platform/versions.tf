terraform {
  # Write-only arguments (password_wo, secret_data_wo) need 1.11: the database password never enters state.
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
}
