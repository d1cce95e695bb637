# Delplace 2019 (placeholder: the Delplace helper replaces this file).


def delplace2019_targets():
    return []


PAPER_TARGETS["delplace2019"] = delplace2019_targets


rule delplace2019:
    input:
        delplace2019_targets(),
