"""Generation: a prepared request, the one run path (a request is a batch of one) and what it reports."""
