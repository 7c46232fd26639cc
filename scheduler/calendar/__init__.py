"""Calendar: opening rules, closures and the slot grid."""
