"""The input contract: event shapes, their JSON Schemas and validation."""
