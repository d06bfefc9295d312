print("bpfnet")
