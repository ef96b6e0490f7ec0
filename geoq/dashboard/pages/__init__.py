"""One module per page: a GET that renders it and the POSTs that act from it."""
