"""What people read: tables, JSON views, diagrams."""
