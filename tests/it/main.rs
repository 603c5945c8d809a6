//! The integration tests, one binary (one link of the dependency tree instead of one per
//! file). Each module is named after its subject; `common` holds the shared helpers.

mod archive;
mod boot;
mod build_engine;
mod build_fake;
mod bundle_config;
mod bundle_golden;
mod bundle_proptest;
mod bundle_snapshots;
mod cache;
mod cli_build;
mod cli_validate;
mod common;
mod disk;
mod engine_cli;
mod engine_docker;
mod exec_queue;
mod golden;
mod output_formats;
mod output_targets;
mod registry_cli;
mod registry_memory;
mod registry_source;
mod runc_bundles;
mod spec_corpus;
mod spec_fuzz;
mod spec_invalid;
mod spec_load;
mod spec_merge;
mod start_bundle;
