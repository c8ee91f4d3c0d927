"""What only a deployment on several machines needs (docs/deployment.md): the Celery workers' app."""
