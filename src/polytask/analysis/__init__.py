"""What training reveals about the tasks: their affinity (measured by a training
callback), their gradient conflict, and how to group them into models."""
