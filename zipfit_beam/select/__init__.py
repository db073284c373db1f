"""Selection: the pure cut maths (``cut``: top-K, token budget, fraction, score floor, by
exact radix rounds) and its Beam transforms (``transforms``: FindCut, SelectDocuments)."""
