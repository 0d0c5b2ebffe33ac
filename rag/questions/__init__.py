"""What a question names, read by rules: the companies and periods it mentions (turned into filters and boosts), the
report sections it asks about, and the vocabulary of dates and fiscal periods that ingestion reads documents with
too."""
