// Each fault test runs the Delivery service, its servers and a provider fake flat out: one at a time on a
// 2-core machine, or their timings would measure each other.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
