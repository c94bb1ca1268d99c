"""Published numbers the tests check phase4 against, each with the publication it comes from.

The tests take these from here, never from a file outside the repository; the product keeps its
own copies (phase4.phantoms.earl, phase4.probes.dicom.nuclides), which the tests compare with
these.
"""
