namespace Crm.Campaigns.Features.Schedule;

/// <summary>Schedules: at a time, each contact's local time, recurring (Cronos); creates runs when due. Owner: campaigns-experiments.</summary>
public sealed class ScheduleEngine
{
}

public static class ScheduleRegistration
{
    public static IServiceCollection AddSchedules(this IServiceCollection services)
    {
        services.AddSingleton<ScheduleEngine>();
        return services;
    }
}
