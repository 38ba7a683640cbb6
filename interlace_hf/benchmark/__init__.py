"""`interlace-hf bench`: counted FLOPs and the ideal speed-up (`flops`), random full-size models (`models`), the
prompt (`prompt`), timing and memory (`measure`), the stock-vs-interlace comparison (`stock`), and the report
(`report`); `bench` is the command."""
