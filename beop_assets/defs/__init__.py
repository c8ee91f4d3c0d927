"""Every Dagster object of the product, one folder per domain (model, exports, operations); `beop_assets.definitions`
assembles them with the resources it builds from the deployment's settings."""
