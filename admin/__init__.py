"""`inpaint-admin`: the operator's command line (migrations, API keys, the model registry)."""
