"""`pytest --nbval notebooks` runs the course in quick mode: small real samples, no network."""
import os

os.environ["CNNCOURSE_QUICK"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")
