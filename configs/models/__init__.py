"""Model builders referenced from pipeline files as ``configs/models/<file>.py:<function>``."""
