"""Images: the object store (S3-compatible or a local directory), signed links, and the image codec."""
