"""ocop_workflow: a workflow engine for Vietnam's OCOP programme (One Commune One Product).

Dossiers are persisted state machines; the database is the truth. See README.md.
"""

__version__ = "0.1.0"
