"""ipt-workflow: a rules-based scheduling and workflow engine for courses of IPT."""

__version__ = "0.1.0"
