"""How a secret value is shown when it is not revealed (API, dashboard, agent settings)."""

SECRET_MASK = "••••••••"
