"""Stage 4: trained GAN -> metrics, encoder inversion, embeddings, interpolations."""
