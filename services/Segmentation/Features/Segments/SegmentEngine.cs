namespace Crm.Segmentation.Features.Segments;

// Placeholder: this capability is being built in Features/Segments.
public sealed class SegmentEngine;

public static class SegmentsRegistration
{
    public static IServiceCollection AddSegments(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton<SegmentEngine>();
        return services;
    }
}
