"""`brainseg view`: a local web viewer of a finished run (FastAPI, uvicorn, NiiVue)."""
