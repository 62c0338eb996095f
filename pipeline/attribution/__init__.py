"""Attribution: the call sites that allocate PTE tables and leave them empty (symbols, attribute)."""
