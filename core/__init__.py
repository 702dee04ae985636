"""The foundation: what every app uses and that imports no app (errors, crypto, DRF glue, the audit
trail and its Actor, the request->actor helper, the admin toolkit, and the reconciler kick)."""
