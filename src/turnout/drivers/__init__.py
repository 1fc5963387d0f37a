"""Provider drivers: one interface (`base.Driver`), one module per wire format, resolved by `registry`."""
