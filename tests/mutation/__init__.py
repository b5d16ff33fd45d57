"""Mutation score of the notebooks' tests: ``python -m tests.mutation`` (see ``__main__``)."""
